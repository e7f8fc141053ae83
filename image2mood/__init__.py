"""image2mood core: models, audio, images, moods, the song store and the query logic.

The tenants (``indexer``, ``service``, ``training``) import this package; it imports none of them.
"""

__version__ = "0.1.0"
