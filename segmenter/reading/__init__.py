"""Reading what Label Studio sends: the label config and its ``model_*`` settings, a task's
series and time axis, and an annotation's regions as per-row labels."""
