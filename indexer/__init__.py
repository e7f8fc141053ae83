"""The indexer tenant: turns music folders into songs in the store (`image2mood index`, `image2mood songs`)."""
