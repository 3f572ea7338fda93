"""Purpose-built algorithms of the channels formulation, in vectorised numpy."""
