"""Training and evaluation speed: the library's loop and evaluator against plain PyTorch, the FLOP ceiling,
scaling with users."""
