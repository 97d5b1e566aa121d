from keras_lottery.cli import main

main()
