"""Purpose-built algorithms of the joint-qp formulation, in vectorised numpy."""
