"""The service tenant: a Flask app (JSON API and a web page) over the core's recommender."""
