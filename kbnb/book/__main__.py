from kbnb.book.runner import main

main()
