"""The playground page's static files (index.html, *.js, style.css), served by service/api/playground.py."""
