"""`python -m flows.consent ...`: the consent ledger's command line (it lives in cloning/cli.py)."""

if __name__ == "__main__":
    from cloning.cli import main

    raise SystemExit(main())
