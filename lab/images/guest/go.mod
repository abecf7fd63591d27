module tandem.dev/lab/images/guest

go 1.22
