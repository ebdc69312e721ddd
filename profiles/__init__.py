"""Shipped profiles (installed as ``flowblending.profiles``; ``load_profile("wan21")`` finds them by name)."""
