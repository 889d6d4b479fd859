# Latency distribution per system, one panel per payload size, from report.py's data files.
#   gnuplot -e "datadir='DIR'; outfile='latency.png'; payloads='1k 64k 1m'" latency.gp
set terminal pngcairo size 500*words(payloads),520 font ",10" noenhanced
set output outfile
set datafile missing "NaN"
set key bottom right opaque autotitle columnheader
set logscale xy
set xrange [1:10000]
set xtics ("50%%" 2, "90%%" 10, "99%%" 100, "99.9%%" 1000, "99.99%%" 10000)
set xlabel "percentile"
set ylabel "round-trip latency (ms)"
set grid
set multiplot layout 1,words(payloads) title "Round-trip latency distribution, wrk -c1 (keep-alive)"
do for [p in payloads] {
	set title (p eq "1k" ? "1 KB" : p eq "64k" ? "64 KB" : "1 MB") . " JSON response"
	plot for [i=3:*] datadir."/".p.".dat" using 2:i with linespoints pointsize 0.6 lw 2
}
unset multiplot
