"""Errors of the billing services: a message that says what to fix."""


class BillingError(ValueError):
    """A billing action that cannot be done as asked (the message says why and what to do)."""
