"""Purpose-built algorithms of the joint formulation, in vectorised numpy."""
