// Charts (TradingView lightweight-charts, vendored): the equity curve and candles.
import {
  CandlestickSeries,
  ColorType,
  LineSeries,
  createChart,
} from "./vendor/lightweight-charts-5.2.1.mjs";

const LOOK = {
  layout: { background: { type: ColorType.Solid, color: "#11161d" }, textColor: "#c9d1d9" },
  grid: { vertLines: { color: "#1f2630" }, horzLines: { color: "#1f2630" } },
  timeScale: { timeVisible: true, secondsVisible: true },
  autoSize: true,
};

const seconds = (stamp) => Math.floor(Date.parse(stamp) / 1000);

// One point per second at most (the chart needs strictly increasing times): the last wins.
function oncePerSecond(points) {
  const bySecond = new Map();
  for (const point of points) bySecond.set(point.time, point);
  return [...bySecond.values()].sort((a, b) => a.time - b.time);
}

export class EquityChart {
  constructor(element) {
    this.chart = createChart(element, LOOK);
    this.series = this.chart.addSeries(LineSeries, { color: "#3fb950", lineWidth: 2 });
    this.lastTime = null;
    this.count = 0;
  }

  show(points) {
    const data = oncePerSecond(points.map((p) => ({ time: seconds(p.timestamp), value: p.equity })));
    this.series.setData(data);
    this.count = data.length;
    this.lastTime = data.length ? data[data.length - 1].time : null;
    this.chart.timeScale().fitContent();
  }

  // A newer equity figure (from the session's live detail) extends the curve.
  extend(timestamp, equity) {
    const time = seconds(timestamp);
    if (this.lastTime !== null && time < this.lastTime) return;
    this.series.update({ time, value: equity });
    if (time !== this.lastTime) this.count += 1;
    this.lastTime = time;
  }
}

export class CandleChart {
  constructor(element) {
    this.chart = createChart(element, LOOK);
    this.series = this.chart.addSeries(CandlestickSeries, {
      upColor: "#3fb950", downColor: "#f85149", borderVisible: false,
      wickUpColor: "#3fb950", wickDownColor: "#f85149",
    });
    this.count = 0;
  }

  show(candles) {
    const data = candles.map((c) => ({
      time: seconds(c.time), open: c.open, high: c.high, low: c.low, close: c.close,
    }));
    this.series.setData(data);
    this.count = data.length;
    this.chart.timeScale().fitContent();
  }
}
