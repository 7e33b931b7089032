"""Training engines: plain supervised, weight decay, Parseval, adversarial G/f."""
