"""The embedded demo clinical folder: synthetic, anatomy-like patients as DICOM CT."""

from ctrobust.demo_data.folder import DemoFolder, DemoPatient, write_demo_folder

__all__ = ["DemoFolder", "DemoPatient", "write_demo_folder"]
