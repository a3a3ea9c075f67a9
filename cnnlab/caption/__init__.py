"""Image captioning of §7: vocabulary, COCO data, ResNet-18 + TCN/GRU captioners, decoding, COCO metrics."""
