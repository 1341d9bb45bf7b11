from crosspark.cli import main

if __name__ == "__main__":  # not when a spawned process (card import) imports this module again
    main()
