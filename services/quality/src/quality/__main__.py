"""`python -m quality check|report|schedule`."""

from quality.main import main

if __name__ == "__main__":
    main()
