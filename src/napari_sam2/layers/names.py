"""Names of the layers the plugin creates, in one place."""

POINTS = "SAM2 points"
BOXES = "SAM2 boxes"
LABELS = "SAM2 labels"

# Feature columns on the prompt layers.
OBJECT_ID = "object_id"
POSITIVE = "positive"
REGION = "SAM2 region"  # a rectangle: the part of large frames to track at native resolution
