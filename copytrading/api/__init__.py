"""The client REST API of spec/client-api.md: what a customer's terminal calls."""
