"""The REST API: thin handlers over the services, one router per resource."""
