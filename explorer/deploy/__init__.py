"""From a DesignPoint to deployable artefacts: ONNX export, TVM builds."""
