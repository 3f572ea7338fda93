"""Purpose-built algorithms of the allocation formulation, in vectorised numpy."""
