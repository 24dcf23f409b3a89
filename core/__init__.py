"""Names, settings and boundary models shared by the server, the workflows and the workers."""
