"""Class names and palettes (RGB) of the datasets rtseg knows."""
from __future__ import annotations

__all__ = ["CAMVID_CLASSES", "CAMVID_PALETTE", "CITYSCAPES_CLASSES", "CITYSCAPES_PALETTE", "DATASETS"]

# SegNet's 11-class CamVid; label 11 (void) is ignored.
CAMVID_CLASSES = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree",
    "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
)
# From camvid11_colours.png of the SegNet tutorial.
CAMVID_PALETTE = (
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
    (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
)

# The 19 Cityscapes train ids; 255 is ignored.
CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)
CITYSCAPES_PALETTE = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
)

# dataset name -> (class names, palette, ignore id in the label files)
DATASETS = {
    "camvid": (CAMVID_CLASSES, CAMVID_PALETTE, 11),
    "cityscapes": (CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, 255),
}
