#!/usr/bin/perl
# Reads perfdata strings from stdin, one a line, with Monitoring::Plugin::Performance (the
# parser Opsview's old importer used) and prints one JSON array a line: each metric's label,
# value and uom as that parser reads them (strings, or null).
use strict;
use warnings;
use JSON::PP;
use Monitoring::Plugin::Performance;

my $json = JSON::PP->new->canonical;
binmode STDIN, ':encoding(UTF-8)';
binmode STDOUT, ':encoding(UTF-8)';
while (my $line = <STDIN>) {
    chomp $line;
    my @metrics = map {
        my $p = $_;
        [ map { defined $_ ? "$_" : undef }
          $p->label, $p->value, $p->uom ]
    } Monitoring::Plugin::Performance->parse_perfstring($line);
    print $json->encode(\@metrics), "\n";
}
