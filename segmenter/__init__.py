"""Time-series segmentation for Label Studio: labeling config, series, annotations,
training, inference, regions, model store, background jobs and the ML backend service."""
