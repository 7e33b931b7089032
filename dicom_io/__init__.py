"""Clinical DICOM in and out for ctrobust."""
