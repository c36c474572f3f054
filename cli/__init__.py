"""The `easel` command: serve (gateway), worker (one worker process), up (a local stack)."""
