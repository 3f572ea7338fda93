"""Purpose-built algorithms in vectorised numpy (no Python loop over items)."""
