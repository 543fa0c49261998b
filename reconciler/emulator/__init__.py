"""A faithful local Exchange Online: Entra token endpoint + adminapi, over HTTPS. Imports nothing from the rest of reconciler."""
