"""`python -m s3_archiver`: run the archiver (or `athena-ddl` to regenerate deploy/athena)."""

from s3_archiver.main import main

main()
