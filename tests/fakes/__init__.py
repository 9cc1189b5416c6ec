"""Fakes shared by the tests: real local servers that stand in for agents and models."""
