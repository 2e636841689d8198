"""Release: the canary's verdict, promotion and rollback in the registry, and unattended retraining."""
