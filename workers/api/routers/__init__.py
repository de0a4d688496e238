"""The API's routes, one router per resource; `create_app` includes them in this order (the
order of the OpenAPI document's paths)."""
