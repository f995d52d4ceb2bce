import pytest
import torch


@pytest.fixture(scope="session")
def resnet18(tmp_path_factory):
    """ResNet-18 at 224x224 as ONNX (random weights: lowering and counters do not depend on them)."""
    from explorer.deploy.export import export_onnx
    from explorer.zoo import ResNet18

    p = tmp_path_factory.mktemp("r18") / "resnet18.onnx"
    torch.manual_seed(0)
    export_onnx(ResNet18().eval(), (3, 224, 224), p)
    return p


@pytest.fixture(scope="session")
def resnet18_layers(resnet18):
    """The layers of :func:`resnet18` the VTA target offloads, in program order (conv0..conv19, dense20)."""
    from explorer.accel.compile import offload_plan
    from explorer.deploy.tvm_build import import_relax, load_onnx

    return offload_plan(import_relax(load_onnx(resnet18)))[0]
