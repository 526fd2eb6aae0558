from cats_dogs_other.train.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
