"""Task recipes: each holds its task's part (data, head, loss, decode, score); `run.py` starts and finishes a run."""
