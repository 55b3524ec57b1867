"""CT volumes from DICOM and MetaImage, world/voxel geometry, and cutting 3D patches around candidates."""
