"""The U-Net: load and save (`models`), run it (`backends`: torch / onnxruntime), train it."""
