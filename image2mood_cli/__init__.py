"""The roof: the `image2mood` command assembles the tenants' command groups and the models group."""
