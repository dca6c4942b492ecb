"""The web service: the Flask app and its blueprints, authentication, body buffering under
gunicorn, metrics, the training scheduler and the per-process runtime."""
