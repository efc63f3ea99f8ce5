#!/usr/bin/perl
# Reads perfdata strings from stdin, one a line, with Monitoring::Plugin::Performance (the
# algorithm Opsview's old importer used), and prints one JSON line of counts and timing in the
# shape of `perfpipe parse --summary`. Timing covers reading and parsing, not interpreter start.
use strict;
use warnings;
use Time::HiRes qw(time);
use Monitoring::Plugin::Performance;

my ($lines, $metrics, $bytes) = (0, 0, 0);
my $started = time;
while (my $line = <STDIN>) {
    $bytes += length($line);
    chomp $line;
    $lines++;
    my @perf = Monitoring::Plugin::Performance->parse_perfstring($line);
    $metrics += scalar @perf;
}
my $seconds = time - $started;
printf "{\"lines\":%d,\"metrics\":%d,\"bytes\":%d,\"seconds\":%.6f,\"mb_per_s\":%.3f}\n",
    $lines, $metrics, $bytes, $seconds, $bytes / 1e6 / $seconds;
