"""fate-lung: FATE 2.2 components for federated lung-nodule classification on LUNA16-style CT.

Install with `scripts/install.sh` (it resolves FATE-Flow's pins, see requirements/).
The components reach FATE through the `fate.ext.component_desc` entry-point group,
which FATE scans with pkg_resources: keep setuptools < 81 in FATE's environment.
"""
from setuptools import find_packages, setup

setup(
    name="fate-lung",
    version="0.1.0",
    description="FATE components: federated 3D-CNN lung-nodule classification across hospitals",
    packages=find_packages(include=["fate_components", "fate_components.*"]),
    python_requires=">=3.10",
    install_requires=[
        "pyfate==2.2.0",
        "fate_client==2.2.0",
        "torch==2.13.0",
        "numpy<2.0.0",
        "pydicom>=3.0,<4",
        "pylibjpeg>=2.0",
        "pylibjpeg-openjpeg>=2.3",
        "pylibjpeg-rle",
        "python-gdcm",
        "SimpleITK>=2.3",
        "gmpy2>=2.1",
        "cryptography>=41",
        "scipy",
        "rich",
        "setuptools<81",
    ],
    entry_points={
        "fate.ext.component_desc": [
            "luna16_reader = fate_components.components.luna16_reader:luna16_reader",
            "homo_lung_nn = fate_components.components.homo_lung_nn:homo_lung_nn",
            "lung_evaluation = fate_components.components.lung_evaluation:lung_evaluation",
        ],
        "console_scripts": ["fate-lung = fate_components.cli:main"],
    },
)
