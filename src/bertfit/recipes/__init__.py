"""Task recipes: one readable function per job, built on the shared training loop."""
