"""`python -m digest_rag ...` runs the digest-rag CLI."""

from .cli import run

if __name__ == "__main__":
    run()
