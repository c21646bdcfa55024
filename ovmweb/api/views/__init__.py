"""Viewsets of the REST API, one module per resource. They validate the shape
of a request with a serializer, call ONE service, and render what it returns:
201/200 with the object, or 202 with the Job that was queued. The shared pieces
are in ``base``."""
