"""Label Studio access: the REST client, the connection a project keeps, fetching task data
(with a download cache) and writing predictions back after a training."""
