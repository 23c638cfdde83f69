"""`python -m digest_rag ...` runs the digest-rag CLI."""

from digest_rag.frontends.cli import run

if __name__ == "__main__":
    run()
