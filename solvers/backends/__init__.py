"""One adapter per backend (Pyomo-HiGHS, Pyomo-SCIP, CP-SAT, highspy): running a declared model and mapping its status."""
