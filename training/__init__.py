"""The training tenant: the projection-head and BLIP trainers (`image2mood train ...`)."""
