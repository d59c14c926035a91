"""Per-task export + model-card writers (they read a checkpoint, never train)."""
