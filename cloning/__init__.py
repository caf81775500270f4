"""Voice cloning, consent first. A job uses one object, session.CloneSession (consent, reference, the voice
created once, its audited use, disclosure and report); behind it: ledger.py (consent records and the audit
log), reference.py (the reference recording), voice.py (each engine's clone, reached through the engine
registry's CloneSpec), revoke.py (revocation in one place) and cli.py (`python -m cloning.cli`, also
`python -m flows.consent`)."""
