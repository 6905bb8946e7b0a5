(function () {
  var payload = JSON.parse(document.getElementById('{{ data_id }}').textContent);
  var ids = Object.keys(payload.figures), done = 0;
  ids.forEach(function (id) {
    var el = document.getElementById(id);
    if (!el) { return; }
    var fig = payload.figures[id];
    Plotly.newPlot(el, fig.data, fig.layout, {displaylogo: false, responsive: true}).then(function () {
      done += 1; document.body.setAttribute('data-charts-rendered', String(done));
    });
  });
})();
